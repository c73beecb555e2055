import { createEngine, SwitchyardError } from 'switchyard'

const engine = createEngine({ threads: 2 })
engine.channel('chat', {
  onConnect: (ctx) => ctx.send({ hello: ctx.connectionId }),
  actions: {
    login: { auth: false, func: (ctx, { name }) => { ctx.setSession({ name }); ctx.subscribe('room'); return { ok: true } } },
    say: async (ctx, { text }) => {
      if (typeof text !== 'string') throw new SwitchyardError('invalid_input', 'text must be a string')
      ctx.publish('room', { from: ctx.session.name, text })
    }
  }
})
const { address } = await engine.listen('127.0.0.1:9001')
console.log(`listening on ws://${address}/chat`)
